// Package asciicast writes and reads asciicast v2 recordings
// (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line
// followed by one [time, code, data] JSON array a line.
//
// An Encoder turns the stream.data events of one exec or attach stream
// into a cast: stdout and stderr become "o" (output) events, stdin "i"
// (input) and resize "r" with data "WIDTHxHEIGHT". Times are seconds since
// the stream's first event. Read parses a cast back, for tests and tools.
package asciicast
