package cli

import (
	"io"

	"github.com/schollz/progressbar/v3"
)

// progress is a progress bar on a terminal (stderr), for long work.
type progress struct{ bar *progressbar.ProgressBar }

func newProgress(w io.Writer, total int, what string) *progress {
	return &progress{bar: progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)}
}

func (p *progress) set(n int) { _ = p.bar.Set(n) }

func (p *progress) done() { _ = p.bar.Finish() }
