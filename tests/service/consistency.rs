//! Consistency between the database and the XMPP server under faults (issue 5).
