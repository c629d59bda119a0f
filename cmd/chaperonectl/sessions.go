package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-dev/chaperone/pkg/audit"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/render"
	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Time layouts of table output; times print in UTC.
const (
	layoutStarted = "2006-01-02 15:04:05Z"
	layoutEvent   = "15:04:05.000"
)

func newSessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sessions",
		Aliases: []string{"session"},
		Short:   "List, show, replay, export and verify recorded sessions",
	}
	cmd.AddCommand(newListCmd(g), newShowCmd(g), newReplayCmd(g), newExportCmd(g), newVerifyCmd(g))
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	var (
		q   client.SessionQuery
		all bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sessions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			var page store.SessionPage
			if all {
				page.Sessions = []store.Session{}
				for s, err := range c.AllSessions(cmd.Context(), q) {
					if err != nil {
						return err
					}
					page.Sessions = append(page.Sessions, s)
				}
			} else if page, err = c.Sessions(cmd.Context(), q); err != nil {
				return err
			}
			if g.Output == outputJSON {
				return writeJSON(g.streams.out, page)
			}
			if err := sessionTable(g.streams.out, page.Sessions); err != nil {
				return err
			}
			if page.Next != "" {
				fmt.Fprintf(g.streams.err, "more sessions: add --cursor %s, or use --all\n", page.Next)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.User, "user", "", "only sessions of this user")
	f.StringVar(&q.Namespace, "namespace", "", "only sessions in this namespace")
	f.StringVar(&q.Pod, "pod", "", "only sessions of this pod")
	f.StringVar(&q.Since, "since", "", "started at or after: RFC 3339 time or a duration ago (1h, 7d)")
	f.StringVar(&q.Until, "until", "", "started before: RFC 3339 time or a duration ago")
	f.StringVar(&q.Resource, "resource", "", "touched this host, ip:port or k8s:<resource>")
	f.StringVar(&q.Verdict, "verdict", "", "saw this verdict: allow, deny, held, approved, denied")
	f.IntVar(&q.Limit, "limit", 0, "page size, 1 to 1000 (server default 50)")
	f.StringVar(&q.Cursor, "cursor", "", "continue from a previous page")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

func sessionTable(w io.Writer, sessions []store.Session) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tUSER\tNAMESPACE\tPOD\tSTARTED\tEVENTS\tVERDICTS")
	for _, s := range sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			cell(s.ID), cell(s.User), cell(s.Namespace), cell(s.Pod),
			s.Started.UTC().Format(layoutStarted), s.Events, cell(strings.Join(s.Verdicts, ",")))
	}
	return tw.Flush()
}

// cell makes untrusted text safe for one table cell ("-" when empty).
func cell(s string) string {
	s = render.Clean(s, 64)
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(s, "\t", " ")
}

func newShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a session's summary and its events, one line each",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			s, err := c.Session(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.Output == outputJSON {
				events := []*event.Event{}
				if err := c.Events(cmd.Context(), s.ID, 0, func(e *event.Event) error {
					events = append(events, e)
					return nil
				}); err != nil {
					return err
				}
				return writeJSON(g.streams.out, struct {
					Session store.Session  `json:"session"`
					Events  []*event.Event `json:"events"`
				}{s, events})
			}
			w := g.streams.out
			summary(w, s)
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "INDEX\tTIME\tKIND\tSUMMARY")
			err = c.Events(cmd.Context(), s.ID, 0, func(e *event.Event) error {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", index(e), e.Time.UTC().Format(layoutEvent), cell(string(e.Kind)), render.Line(e))
				return nil
			})
			if ferr := tw.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
}

func summary(w io.Writer, s store.Session) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Session", cell(s.ID))
	row("User", cell(s.User))
	row("Namespace", cell(s.Namespace))
	row("Pod", cell(s.Pod))
	if s.ServiceAccount != "" {
		row("Service account", cell(s.ServiceAccount))
	}
	row("Origin", cell(s.Origin))
	row("Started", s.Started.UTC().Format(layoutStarted))
	row("Last event", s.LastEvent.UTC().Format(layoutStarted))
	row("Ended", strconv.FormatBool(s.Ended))
	row("Events", strconv.FormatUint(s.Events, 10))
	row("Resources", render.Clean(orDash(strings.Join(s.Resources, ", ")), 200))
	row("Verdicts", cell(strings.Join(s.Verdicts, ", ")))
	row("Head", cell(s.Head))
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func index(e *event.Event) uint64 {
	if e.Chain == nil {
		return 0
	}
	return e.Chain.Index
}

func newReplayCmd(g *globals) *cobra.Command {
	var o client.ReplayOptions
	var compact bool
	var view string
	cmd := &cobra.Command{
		Use:   "replay ID",
		Short: "Replay a session with its original timing, one line per event (or as the agent's conversation)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !(o.Speed > 0) {
				return fmt.Errorf("--speed %v: want a number greater than 0", o.Speed)
			}
			if view != viewEvents && view != viewConversation {
				return fmt.Errorf("--view %q: want %s or %s", view, viewEvents, viewConversation)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			w := g.streams.out
			if view == viewConversation && g.Output != outputJSON {
				return replayConversation(cmd.Context(), c, args[0], o, w)
			}
			return c.Replay(cmd.Context(), args[0], o, func(e *event.Event) error {
				if g.Output == outputJSON {
					return writeJSONLine(w, e)
				}
				if _, err := fmt.Fprintf(w, "%s  %-5d %-18s %s\n", e.Time.UTC().Format(layoutEvent), index(e), cell(string(e.Kind)), render.Line(e)); err != nil {
					return err
				}
				if compact {
					return nil
				}
				for _, d := range render.Details(e) {
					if _, err := fmt.Fprintf(w, "%43s%s\n", "", d); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&compact, "compact", false, "one line per event, without headers and body previews")
	cmd.Flags().StringVar(&view, "view", viewEvents, "events: every event; conversation: each prompt, its completion, and the tool calls and requests that followed")
	cmd.Flags().Float64Var(&o.Speed, "speed", 1, "playback speed: the original gaps are divided by it (up to 1000)")
	cmd.Flags().Uint64Var(&o.After, "after", 0, "start after this event index")
	return cmd
}

// Replay views.
const (
	viewEvents       = "events"
	viewConversation = "conversation"
)

// replayConversation replays a session as the agent's conversation (see
// render.Conversation), with the original timing.
func replayConversation(ctx context.Context, c *client.Client, id string, o client.ReplayOptions, w io.Writer) error {
	conv := render.NewConversation()
	emit := func(lines []string) error {
		for _, l := range lines {
			if _, err := fmt.Fprintln(w, l); err != nil {
				return err
			}
		}
		return nil
	}
	if err := c.Replay(ctx, id, o, func(e *event.Event) error {
		lines := conv.Add(e)
		for i := range lines {
			stamp := strings.Repeat(" ", len(layoutEvent))
			if i == 0 {
				stamp = e.Time.UTC().Format(layoutEvent)
			}
			lines[i] = stamp + "  " + lines[i]
		}
		return emit(lines)
	}); err != nil {
		return err
	}
	rest := conv.Flush()
	for i := range rest {
		rest[i] = strings.Repeat(" ", len(layoutEvent)+2) + rest[i]
	}
	return emit(rest)
}

// Export formats.
const (
	formatJSONL     = "jsonl"
	formatAsciicast = "asciicast"
	formatK8sAudit  = "k8s-audit"
)

func newExportCmd(g *globals) *cobra.Command {
	var format, stream string
	cmd := &cobra.Command{
		Use:   "export ID",
		Short: "Write a session's events to standard output (--format jsonl, asciicast or k8s-audit)",
		Long: `Write a session's events to standard output.

--format jsonl writes the recorded events, one JSON object a line.
--format k8s-audit writes the session's Kubernetes API requests as
audit.k8s.io/v1 Event objects, one a line, as the API server's log backend
writes them (Secret values stay masked as recorded).
--format asciicast writes one exec/attach stream as an asciicast v2
recording (play it with asciinema); --stream names it when the session has
more than one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case formatJSONL, formatK8sAudit, formatAsciicast:
			default:
				return fmt.Errorf("unknown format %q (want jsonl, asciicast or k8s-audit)", format)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if format == formatAsciicast {
				return exportCast(ctx, c, g.streams.out, args[0], stream)
			}
			if format == formatK8sAudit {
				conv := audit.New(c.Blob)
				return c.Events(ctx, args[0], 0, func(e *event.Event) error {
					a, err := conv.Add(ctx, e)
					if err != nil || a == nil {
						return err
					}
					return audit.WriteLine(g.streams.out, a)
				})
			}
			return c.Events(ctx, args[0], 0, func(e *event.Event) error {
				return writeJSONLine(g.streams.out, e)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", formatJSONL, "export format: jsonl, asciicast or k8s-audit")
	cmd.Flags().StringVar(&stream, "stream", "", "with --format asciicast: the stream to export (default: the session's only one)")
	return cmd
}

func newVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify ID",
		Short: "Check a session's hash chain; exit status 1 when it is broken",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			res, err := c.Verify(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := g.streams.out
			if g.Output == outputJSON {
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else if res.OK {
				fmt.Fprintf(w, "chain ok: session %s, %d events, head %s\n", cell(res.Session), res.Events, cell(res.Head))
			} else {
				bad := res.FirstBad
				if bad == nil {
					bad = &store.BadLink{Reason: "no reason given"}
				}
				fmt.Fprintf(w, "chain BROKEN: session %s at index %d (event %s): %s\n",
					cell(res.Session), bad.Index, cell(bad.EventID), render.Clean(bad.Reason, 200))
				if line := badEvent(cmd, c, res.Session, bad.Index); line != "" {
					fmt.Fprintln(w, line)
				}
			}
			if !res.OK {
				return &exitError{code: 1}
			}
			return nil
		},
	}
}

// badEvent renders the stored event at index, or "" when it is missing.
func badEvent(cmd *cobra.Command, c *client.Client, session string, idx uint64) string {
	if idx == 0 {
		return ""
	}
	var line string
	errStop := fmt.Errorf("stop")
	_ = c.Events(cmd.Context(), session, idx-1, func(e *event.Event) error {
		if index(e) == idx {
			line = fmt.Sprintf("  %d  %s  %s  %s", idx, e.Time.UTC().Format(time.RFC3339Nano), cell(string(e.Kind)), render.Line(e))
		}
		return errStop
	})
	return line
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeJSONLine(w io.Writer, e *event.Event) error {
	b, err := event.Encode(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
