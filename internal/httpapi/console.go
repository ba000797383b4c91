package httpapi

import (
	"log/slog"
	"net/http"
)

// console serves the web console and its JSON endpoints.
type console struct {
	brokers []string
	logger  *slog.Logger
}

func newConsole(brokers []string, logger *slog.Logger) (*console, error) {
	return &console{brokers: brokers, logger: logger}, nil
}

func (c *console) register(mux *http.ServeMux) {}

func (c *console) close() {}
