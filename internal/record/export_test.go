package record

// DecompressLimit exposes decompressLimit to the external tests, so that
// the cap of the whole-batch decoders can be tested with a small limit.
var DecompressLimit = decompressLimit
