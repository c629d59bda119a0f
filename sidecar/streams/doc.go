// Package streams decodes the Kubernetes streaming protocols that carry
// exec, attach and port-forward sessions once a connection has been
// upgraded: the WebSocket channel protocols (channel.k8s.io and its v4, v5
// and base64 variants, portforward.k8s.io, and SPDY tunnelled over
// WebSocket) and SPDY/3.1, kubectl's older transport.
//
// A Decoder is fed the raw bytes of each direction as they pass through the
// proxy, after the HTTP/1.1 "101 Switching Protocols" response, in chunks of
// any size. It calls emit with one event.StreamData per piece of terminal
// input, output, resize or exit status it recognises. The decoder never
// changes or holds back the bytes; it only watches them. Memory is bounded:
// messages are emitted in pieces of at most MaxChunk bytes and control
// payloads larger than a small cap are skipped, so garbage input costs at
// most a few tens of kilobytes per connection.
//
// Channels map to event.StreamData.Channel as follows. Exec and attach:
// "stdin" (client to pod), "stdout", "stderr", "resize" (Width, Height) and
// "exit" (Exit, from the metav1.Status on the error channel; Data carries
// its message when the command failed for another reason). Port-forward:
// bytes the client sends are "stdin", bytes the pod sends are "stdout", the
// per-port error channel is "stderr", and Stream gets the suffix ":PORT".
// Bytes the decoder cannot attribute to a channel are reported as "data".
package streams
