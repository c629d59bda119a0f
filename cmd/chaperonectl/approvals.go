package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
)

func newApprovalsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "approvals",
		Aliases: []string{"approval"},
		Short:   "List, approve and deny operations held for approval",
	}
	cmd.AddCommand(newApprovalsListCmd(g), newDecideCmd(g, true), newDecideCmd(g, false))
	return cmd
}

func newApprovalsListCmd(g *globals) *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List approval requests (pending ones unless --state says otherwise)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := state
			switch state {
			case "all":
				q = ""
			case approvals.StatePending, approvals.StateApproved, approvals.StateDenied, approvals.StateExpired:
			default:
				return fmt.Errorf("--state %q: want pending, approved, denied, expired or all", state)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			list, err := c.Approvals(cmd.Context(), q)
			if err != nil {
				return err
			}
			if g.Output == outputJSON {
				return writeJSON(g.streams.out, list)
			}
			return approvalTable(g.streams.out, list)
		},
	}
	cmd.Flags().StringVar(&state, "state", approvals.StatePending, "pending, approved, denied, expired or all")
	return cmd
}

func newDecideCmd(g *globals, approve bool) *cobra.Command {
	verb, short := "deny", "Deny a held operation"
	if approve {
		verb, short = "approve", "Approve a held operation"
	}
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			decide := c.Deny
			if approve {
				decide = c.Approve
			}
			a, err := decide(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			if g.Output == outputJSON {
				return writeJSON(g.streams.out, a)
			}
			if a.State == approvals.StatePending {
				_, err = fmt.Fprintf(g.streams.out, "%s: pending, %d of %d approvals\n", a.ID, len(a.Approvers()), max(a.MinApprovals, 1))
			} else {
				_, err = fmt.Fprintf(g.streams.out, "%s: %s\n", a.ID, a.State)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the answer")
	return cmd
}

func approvalTable(w io.Writer, list []*approvals.Approval) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSESSION\tRULE\tSUMMARY\tAPPROVALS\tAPPROVERS\tDEADLINE")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", a.ID, a.State, a.Session, dash(a.Rule), a.Summary,
			len(a.Approvers()), max(a.MinApprovals, 1), dash(strings.Join(a.ApproverGroups, ",")),
			a.Deadline.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
