//! Lets tokio-xmpp accept a component stream header without `version`.
//!
//! XEP-0114 servers (Prosody, Openfire) answer a component with a stream header that has no
//! `version` attribute. tokio-xmpp 6 accepts that only with its `component` feature, which must
//! stay off (it turns every typed stanza of the build into `jabber:component:accept`, see
//! XMPP-NOTES.md). This transport adapter inserts `version='1.0'` into the server's opening
//! `<stream:stream …>` tag when it lacks one, and passes everything else through untouched.

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
}

impl<S> VersionFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        VersionFix {
            inner,
            scanning: true,
            acc: Vec::new(),
            out: Vec::new(),
            pos: 0,
        }
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
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
