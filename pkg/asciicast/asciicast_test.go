package asciicast

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func sd(ms int, stream, channel, text string) *event.Event {
	e := event.New("sess-1", event.KindStreamData, t0.Add(time.Duration(ms)*time.Millisecond))
	e.StreamData = &event.StreamData{Stream: stream, Channel: channel}
	if text != "" {
		e.StreamData.Data = &event.Body{Size: int64(len(text)), Recorded: int64(len(text)), Text: text}
	}
	return e
}

// session is an exec session interleaved with another stream and other
// events, with a multi-byte character split across two chunks.
func session() []*event.Event {
	resize := sd(0, "exec-1", "resize", "")
	resize.StreamData.Width, resize.StreamData.Height = 120, 40
	other := event.New("sess-1", event.KindConnOpen, t0)
	exit := sd(2500, "exec-1", "exit", "")
	zero := 0
	exit.StreamData.Exit = &zero
	bin := sd(1200, "exec-1", "stdout", "")
	bin.StreamData.Data = &event.Body{Size: 3, Recorded: 3, B64: []byte("\xe2\x82\xac")} // "€"
	split1 := sd(1300, "exec-1", "stdout", "caf\xc3")
	split1.StreamData.Data.Text = "" // not valid UTF-8 alone: recorded as bytes
	split1.StreamData.Data.B64 = []byte("caf\xc3")
	split2 := sd(1301, "exec-1", "stdout", "")
	split2.StreamData.Data = &event.Body{Size: 3, Recorded: 3, B64: []byte("\xa9\r\n")}
	return []*event.Event{
		other, resize,
		sd(100, "exec-1", "stdout", "$ "),
		sd(900, "exec-1", "stdin", "echo hi\r"),
		sd(950, "exec-2", "stdout", "not this stream"),
		sd(1000, "exec-1", "stdout", "echo hi\r\nhi\r\n"),
		bin, split1, split2,
		sd(2000, "exec-1", "stderr", "warning: \"quoted\"\r\n"),
		exit,
	}
}

func TestWriteGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, session(), "exec-1", "sess-1/exec-1", nil); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "exec.cast")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("cast differs from %s (run with -update):\n%s", golden, buf.Bytes())
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, session(), "exec-1", "t", nil); err != nil {
		t.Fatal(err)
	}
	h, evs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.Width != 120 || h.Height != 40 || h.Timestamp != t0.Unix() || h.Title != "t" {
		t.Errorf("header %+v", h)
	}
	var out, in strings.Builder
	var resizes []string
	last := 0.0
	for _, e := range evs {
		if e.Time < last {
			t.Errorf("time went back: %v after %v", e.Time, last)
		}
		last = e.Time
		switch e.Code {
		case CodeOutput:
			out.WriteString(e.Data)
		case CodeInput:
			in.WriteString(e.Data)
		case CodeResize:
			resizes = append(resizes, e.Data)
		}
	}
	if got, want := out.String(), "$ echo hi\r\nhi\r\n€café\r\nwarning: \"quoted\"\r\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if in.String() != "echo hi\r" || strings.Join(resizes, ",") != "120x40" {
		t.Errorf("input %q resizes %v", in.String(), resizes)
	}
}

func TestWriteNoStream(t *testing.T) {
	err := Write(&bytes.Buffer{}, session(), "exec-9", "", nil)
	if !errors.Is(err, ErrNoStream) {
		t.Fatalf("err %v, want ErrNoStream", err)
	}
	// A streamed HTTP/2 body's "data" chunks are no terminal stream.
	evs := append(session(), sd(3000, "7", "data", "{\"type\":\"ADDED\"}"))
	if got := Streams(evs); strings.Join(got, ",") != "exec-1,exec-2" {
		t.Errorf("streams %v", got)
	}
}

func TestReadErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":   "",
		"version": `{"version":1,"width":80,"height":24}` + "\n",
		"event":   `{"version":2,"width":80,"height":24}` + "\n" + `[1.0,"o"]` + "\n",
		"garbage": "hello\n",
	} {
		if _, _, err := Read(strings.NewReader(in)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
}

// TestAsciinemaCat plays the cast with the real asciinema player and
// compares what it prints with the recorded output. asciinema cat needs a
// controlling terminal, so it gets a fresh pseudo-terminal; its output goes
// to a pipe, untouched by terminal processing.
func TestAsciinemaCat(t *testing.T) {
	bin, err := exec.LookPath("asciinema")
	if err != nil {
		t.Skip("asciinema not installed (apt-get install -y asciinema): skipping the player check")
	}
	path := filepath.Join(t.TempDir(), "exec.cast")
	var buf bytes.Buffer
	if err := Write(&buf, session(), "exec-1", "t", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	tty := openPTY(t)
	cmd := exec.CommandContext(t.Context(), bin, "cat", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stdout, &stderr
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "HOME="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Run(); err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, stderr.Bytes())
	}
	if got, want := stdout.String(), "$ echo hi\r\nhi\r\n€café\r\nwarning: \"quoted\"\r\n"; got != want {
		t.Errorf("asciinema cat printed %q, want %q", got, want)
	}
}

// openPTY returns the terminal side of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
