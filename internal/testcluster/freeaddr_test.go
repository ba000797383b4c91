package testcluster

import "testing"

// TestFreeAddrNeverRepeats: two listeners of one test process must never be
// handed the same port, even when the kernel offers a closed probe port again.
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 500 {
		a := freeAddr(t)
		if seen[a] {
			t.Fatalf("freeAddr returned %s twice", a)
		}
		seen[a] = true
	}
}
