package blob

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"ab/01HZY3K5Q8W2M7V0A1B2C3D4E5", true},
		{"A-Z_a.z=0+9", true},
		{"..a/a..", true},
		{strings.Repeat("s", MaxSegment), true},
		{strings.Repeat("s", MaxSegment+1), false},
		{strings.Repeat("a/", MaxKeyBytes/2-1) + "ab", true}, // 1024 bytes
		{strings.Repeat("a/", MaxKeyBytes/2) + "a", false},   // 1025 bytes
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"a/../b", false},
		{"a\x00", false},
		{"a b", false},
		{"a\\b", false},
		{"é", false},
	}
	for _, tc := range tests {
		err := ValidateKey(tc.key)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidKey)) {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
	}
}

func TestValidateMetadata(t *testing.T) {
	tests := []struct {
		meta Metadata
		ok   bool
	}{
		{nil, true},
		{Metadata{"a-1": "any printable ~"}, true},
		{Metadata{"k": strings.Repeat("v", MaxMetadataBytes-1)}, true},
		{Metadata{"k": strings.Repeat("v", MaxMetadataBytes)}, false},
		{Metadata{"K": "v"}, false},
		{Metadata{"": "v"}, false},
		{Metadata{"k": "\x7f"}, false},
		{Metadata{"k": "\x1f"}, false},
		{Metadata{"k": "é"}, false},
	}
	for i, tc := range tests {
		err := ValidateMetadata(tc.meta)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidMetadata)) {
			t.Errorf("case %d: ValidateMetadata = %v, want ok=%v", i, err, tc.ok)
		}
	}
}
