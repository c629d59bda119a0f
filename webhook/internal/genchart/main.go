// Command genchart writes the chart files that come from package webhook
// (see webhook.ChartFiles) into the directory given as its argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/chaperone-dev/chaperone/webhook"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genchart DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "genchart:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := webhook.ChartFiles()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a chart directory in the repository
		return fmt.Errorf("chart files: %w", err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil { //nolint:gosec // a chart file in the repository
			return fmt.Errorf("chart files: %w", err)
		}
	}
	return nil
}
