package server

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft limit on open files (RLIMIT_NOFILE) to the
// hard limit and logs both: every hosted partition holds at least one
// descriptor (its active segment's log file; index files are opened when
// first written, so a new or just loaded partition holds only that one)
// and every connection one, so a broker with thousands of
// partitions needs far more than the usual soft limit of 1024. The Go
// runtime already raises it on Linux; doing it here too makes the limit
// explicit in the log whatever started the process.
func raiseFileLimit(logger *slog.Logger) (soft uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("cannot read the open file limit", "err", err)
		return 0
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			logger.Warn("cannot raise the open file limit", "soft", lim.Cur, "hard", lim.Max, "err", err)
		} else {
			lim = raised
		}
	}
	logger.Info("open file limit", "soft", lim.Cur, "hard", lim.Max)
	return lim.Cur
}

// checkFileLimit warns when the hosted partitions (one descriptor each at
// least) leave little of the open file limit for connections and segments.
func checkFileLimit(logger *slog.Logger, limit uint64, partitions int) {
	if limit > 0 && uint64(partitions)+1024 > limit {
		logger.Warn("open file limit is close to the number of hosted partitions: raise LimitNOFILE (ulimit -Hn)",
			"limit", limit, "partitions", partitions)
	}
}
