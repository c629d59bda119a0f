package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/chaperone-dev/chaperone/pkg/demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var speed float64
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Record a scripted agent on this machine and replay it (root)",
		Long: `Demo starts chaperone-server (embedded NATS and SQLite) on a temporary data
directory, a small target service, and a scripted agent under the same data path
as "chaperonectl run" (real curl and one raw TCP connection), then replays the
recorded session and verifies its hash chain. It leaves nothing running.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.Run(cmd.Context(), demo.Options{
				Speed:  speed,
				Stdout: g.streams.out,
				Stderr: g.streams.err,
				Logger: slog.New(slog.NewTextHandler(g.streams.err, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
		},
	}
	cmd.Flags().Float64Var(&speed, "speed", 4, "replay speed")
	return cmd
}
