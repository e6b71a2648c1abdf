package dynalite

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("Endpoint = %q", s.Endpoint)
	}
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("POST", s.Endpoint, strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Unsigned: dynalite answers 400 MissingAuthenticationTokenException.
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	s.Stop()
	c.CloseIdleConnections()
	if _, err := c.Get(s.Endpoint); err == nil {
		t.Fatalf("%s still answers after Stop", s.Endpoint)
	}
	s.Stop()
}
