package testcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of size (mount's syntax: "20m") on a fresh
// directory for the test's lifetime; it needs root, as CI has, and fails
// the test without it. Call it before starting nodes on it: cleanups run in
// reverse, so the nodes are gone before the unmount.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs on %s (this test needs root): %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// FillDisk writes the file ballast (replacing it) so large that about
// leave bytes stay free on its file system, as counted before the write.
func FillDisk(t testing.TB, ballast string, leave int64) {
	t.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(ballast), &fs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ballast, make([]byte, int64(fs.Bavail)*fs.Bsize-leave), 0o644); err != nil {
		t.Fatalf("write ballast: %v", err)
	}
}
