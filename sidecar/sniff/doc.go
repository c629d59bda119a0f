// Package sniff tells which protocol a client speaks from the first bytes it
// sends on an intercepted connection, without consuming them: the caller
// gets the peeked bytes back and replays them to whatever handles the
// connection next.
//
// It recognises a TLS ClientHello (and reads its SNI and ALPN when the whole
// first record has arrived), an HTTP/1.x request line, the HTTP/2
// prior-knowledge preface and PostgreSQL startup, SSL and GSS requests.
// Anything else, and a client that sends nothing before the server speaks
// (SMTP, MySQL, SSH), is plain TCP.
package sniff
