//go:build !linux

package log

import (
	"errors"
	"os"
)

var errNoSyncfs = errors.New("syncfs(2) is Linux-only")

// syncfs is unavailable: NewDirSyncer returns nil here.
func syncfs(*os.File) error { return errNoSyncfs }

// deviceOf is unavailable: NewDirSyncer returns nil here.
func deviceOf(string) (uint64, error) { return 0, errNoSyncfs }

// syncfsReportsErrors: syncfs(2) is Linux-only.
func syncfsReportsErrors() (bool, string) { return false, "syncfs(2) is Linux-only" }
