package recordtest

import (
	"runtime"
	"sync"
	"time"
)

// HeapPeak samples runtime HeapInuse every 2 ms until the returned function
// is called, which returns the largest value seen: the bomb tests bound it.
func HeapPeak() func() uint64 {
	var mu sync.Mutex // guards peak
	var peak uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
