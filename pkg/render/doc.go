// Package render turns recorded events into short human text for terminals:
// one line per event (Line), and the byte, duration and text helpers it is
// built from. Event content comes from untrusted agents, so every string is
// stripped of control characters and terminal escape sequences before it
// reaches a screen.
package render
