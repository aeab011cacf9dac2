//! Lets tokio-xmpp accept a component stream header without `version`.
//!
//! XEP-0114 servers (Prosody, Openfire) answer a component with a stream header that has no
//! `version` attribute. tokio-xmpp 6 accepts that only with its `component` feature, which must
//! stay off (it turns every typed stanza of the build into `jabber:component:accept`, see
//! XMPP-NOTES.md). This transport adapter inserts `version='1.0'` into the server's opening
//! `<stream:stream …>` tag when it lacks one, and passes everything else through untouched.
//!
//! On the way out it can add one attribute to the component's own opening tag: Openfire accepts
//! a second connection for a component name only when the header carries `allowMultiple`
//! (`LocalComponentSession.createSession`), and tokio-xmpp's `StreamHeader` has no field for it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const OPEN: &[u8] = b"<stream:stream";
const MAX_HEADER: usize = 16 * 1024;

/// Wraps the component socket; see the module docs.
pub(crate) struct VersionFix<S> {
    inner: S,
    scanning: bool,
    acc: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    /// Attribute text (` name='value'`) still to add to our outgoing opening tag.
    inject: Option<Vec<u8>>,
    /// Outgoing bytes held until the opening tag is complete (only while `inject` is set).
    wacc: Vec<u8>,
    /// Rewritten outgoing bytes not yet written to `inner`.
    wout: Vec<u8>,
}

impl<S> VersionFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        VersionFix {
            inner,
            scanning: true,
            acc: Vec::new(),
            out: Vec::new(),
            pos: 0,
            inject: None,
            wacc: Vec::new(),
            wout: Vec::new(),
        }
    }

    /// Adds `attr` (e.g. ` allowMultiple='true'`) to the first outgoing `<stream:stream` tag.
    pub(crate) fn with_outgoing_attr(mut self, attr: &str) -> Self {
        self.inject = Some(attr.as_bytes().to_vec());
        self
    }
}

/// Our outgoing bytes with `attr` inserted right after `<stream:stream`, or `None` while the
/// tag name has not been written yet.
pub(crate) fn inject_attr(acc: &[u8], attr: &[u8]) -> Option<Vec<u8>> {
    let at = find(acc, OPEN)? + OPEN.len();
    // The name must be complete: `<stream:stream` followed by whitespace or the tag's end.
    let next = *acc.get(at)?;
    if !(next.is_ascii_whitespace() || next == b'>' || next == b'/') {
        return Some(acc.to_vec());
    }
    let mut out = Vec::with_capacity(acc.len() + attr.len());
    out.extend_from_slice(&acc[..at]);
    out.extend_from_slice(attr);
    out.extend_from_slice(&acc[at..]);
    Some(out)
}

impl<S: AsyncWrite + Unpin> VersionFix<S> {
    /// Writes out `wout`; ready once it is empty.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wout.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.wout) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "component socket closed while writing the stream header",
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    self.wout.drain(..n);
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The bytes to pass on once the opening tag is complete, or `None` while it is not.
pub(crate) fn fix_header(acc: &[u8]) -> Option<Vec<u8>> {
    let start = find(acc, OPEN)?;
    let end = start + acc[start..].iter().position(|b| *b == b'>')?;
    let tag = &acc[start..end];
    if find(tag, b"version=").is_some() {
        return Some(acc.to_vec());
    }
    let at = start + OPEN.len();
    let mut out = Vec::with_capacity(acc.len() + 16);
    out.extend_from_slice(&acc[..at]);
    out.extend_from_slice(b" version='1.0'");
    out.extend_from_slice(&acc[at..]);
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for VersionFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.pos);
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.out.len() {
                    this.out.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if !this.scanning {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 2048];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        // EOF: hand over what we have, then EOF.
                        this.scanning = false;
                        this.out = std::mem::take(&mut this.acc);
                        if this.out.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    this.acc.extend_from_slice(got);
                    if let Some(fixed) = fix_header(&this.acc) {
                        this.scanning = false;
                        this.out = fixed;
                        this.acc.clear();
                    } else if this.acc.len() > MAX_HEADER {
                        this.scanning = false;
                        this.out = std::mem::take(&mut this.acc);
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for VersionFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        let Some(attr) = this.inject.as_ref() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        this.wacc.extend_from_slice(buf);
        if let Some(out) = inject_attr(&this.wacc, attr) {
            this.inject = None;
            this.wacc.clear();
            this.wout = out;
        } else if this.wacc.len() > MAX_HEADER {
            this.inject = None;
            this.wout = std::mem::take(&mut this.wacc);
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.inject.is_some() && !this.wacc.is_empty() {
            // Flushed before the tag name was written (an XML declaration alone): pass it on.
            this.wout.append(&mut this.wacc);
        }
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_version_only_when_missing() {
        let h = b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x'>";
        let fixed = fix_header(h).unwrap();
        assert!(String::from_utf8(fixed)
            .unwrap()
            .contains("<stream:stream version='1.0' xmlns:stream"));
        let has = b"<stream:stream version='1.0' id='x'><handshake/>";
        assert_eq!(fix_header(has).unwrap(), has.to_vec());
        assert!(fix_header(b"<stream:stream id='x'").is_none());
    }

    #[test]
    fn injects_the_attribute_into_our_opening_tag_only() {
        let attr = b" allowMultiple='true'";
        let h = b"<?xml version='1.0'?>\n<stream:stream xmlns='jabber:component:accept' to='c.example'>";
        let out = String::from_utf8(inject_attr(h, attr).unwrap()).unwrap();
        assert!(
            out.contains("<stream:stream allowMultiple='true' xmlns="),
            "{out}"
        );
        assert!(inject_attr(b"<?xml version='1.0'?>", attr).is_none());
        assert!(inject_attr(b"<stream:strea", attr).is_none());
        assert!(inject_attr(b"<stream:stream", attr).is_none());
    }

    #[tokio::test]
    async fn writes_the_header_with_the_attribute() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(256);
        let mut w = VersionFix::new(a).with_outgoing_attr(" allowMultiple='true'");
        w.write_all(b"<?xml version='1.0'?>").await.unwrap();
        w.write_all(b"<stream:stream to='c'>").await.unwrap();
        w.write_all(b"<handshake>ab</handshake>").await.unwrap();
        w.flush().await.unwrap();
        drop(w);
        let mut out = String::new();
        b.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            "<?xml version='1.0'?><stream:stream allowMultiple='true' to='c'><handshake>ab</handshake>"
        );
    }

    #[tokio::test]
    async fn passes_split_reads_through() {
        use tokio::io::AsyncReadExt;
        let data: &[u8] = b"<stream:stream id='a'><handshake/>  ";
        let (mut w, r) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in data.chunks(5) {
                w.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut out = String::new();
        VersionFix::new(r).read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "<stream:stream version='1.0' id='a'><handshake/>  ");
    }
}
