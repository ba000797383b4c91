package replica

import "strand/internal/metadata"

// isrSize is the ISR size of a partition in img (0 if img does not have it),
// for counting ISR shrinks and expands.
func isrSize(img *metadata.Image, topic string, partition int32) int {
	t, ok := img.Topic(topic)
	if !ok || partition < 0 || int(partition) >= len(t.Partitions) {
		return 0
	}
	return len(t.Partitions[partition].ISR)
}
