package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chaperone-dev/chaperone/pkg/client"
)

// Environment variables that override the flag defaults.
const (
	envServer = "CHAPERONE_SERVER"
	envToken  = "CHAPERONE_TOKEN"
)

const defaultServer = "http://127.0.0.1:8080"

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// streams are where commands write.
type streams struct {
	out, err io.Writer
}

// globals are the root's persistent flags, resolved against the environment
// by Validate before any command runs.
type globals struct {
	Server    string
	Token     string
	TokenFile string
	Output    string

	streams streams
	getenv  func(string) string
	hc      *http.Client
}

// Validate resolves environment overrides and checks the flags. An explicit
// flag beats the environment, which beats the default.
func (g *globals) Validate(cmd *cobra.Command) error {
	flags := cmd.Flags()
	if !flags.Changed("server") {
		if v := g.getenv(envServer); v != "" {
			g.Server = v
		}
	}
	if flags.Changed("token") && flags.Changed("token-file") {
		return errors.New("--token and --token-file are mutually exclusive")
	}
	switch {
	case g.TokenFile != "":
		b, err := os.ReadFile(g.TokenFile)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		g.Token = strings.TrimSpace(string(b))
		if g.Token == "" {
			return fmt.Errorf("token file %s is empty", g.TokenFile)
		}
	case g.Token == "":
		g.Token = g.getenv(envToken)
	}
	if g.Output != outputTable && g.Output != outputJSON {
		return fmt.Errorf("-o %q: want table or json", g.Output)
	}
	if _, err := client.New(g.Server); err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	return nil
}

// Client returns an API client for the resolved server and token.
func (g *globals) Client() (*client.Client, error) {
	opts := []client.Option{}
	if g.Token != "" {
		opts = append(opts, client.WithToken(g.Token))
	}
	if g.hc != nil {
		opts = append(opts, client.WithHTTPClient(g.hc))
	}
	return client.New(g.Server, opts...)
}

// exitError ends the program with code after printing err (if any).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// newRootCmd builds chaperonectl. extra adds top-level commands (the lead's
// run and demo); each is built with the same resolved globals.
func newRootCmd(s streams, getenv func(string) string, hc *http.Client, extra ...func(*globals) *cobra.Command) *cobra.Command {
	g := &globals{streams: s, getenv: getenv, hc: hc}
	root := &cobra.Command{
		Use:           "chaperonectl",
		Short:         "Inspect, replay and verify sessions recorded by Chaperone",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.Validate(cmd)
		},
	}
	root.SetOut(s.out)
	root.SetErr(s.err)
	pf := root.PersistentFlags()
	pf.StringVar(&g.Server, "server", defaultServer, "chaperone-server URL (env "+envServer+")")
	pf.StringVar(&g.Token, "token", "", "bearer token for the server (env "+envToken+")")
	pf.StringVar(&g.TokenFile, "token-file", "", "file holding the bearer token")
	pf.StringVarP(&g.Output, "output", "o", outputTable, "output format: table or json")

	root.AddCommand(newSessionsCmd(g), newApprovalsCmd(g))
	for _, mk := range extra {
		root.AddCommand(mk(g))
	}
	return root
}

// execute runs chaperonectl with args and returns the exit status.
func execute(ctx context.Context, args []string, s streams, getenv func(string) string, extra ...func(*globals) *cobra.Command) int {
	return executeWith(ctx, args, s, getenv, nil, extra...)
}

func executeWith(ctx context.Context, args []string, s streams, getenv func(string) string, hc *http.Client, extra ...func(*globals) *cobra.Command) int {
	root := newRootCmd(s, getenv, hc, extra...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	fmt.Fprintln(s.err, "chaperonectl:", err)
	return code
}
