package signaling

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadFrame: readFrame must give exactly what io.ReadAll(io.LimitReader(r,
// limit+1)) gave before it, whatever the reader's chunking and the reused buffer.
func TestReadFrame(t *testing.T) {
	const limit = 600
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		r       func() io.Reader
		buf     []byte // reused buffer passed in (its old contents must not leak)
		want    int    // bytes returned
		wantErr error
	}{
		{"empty", func() io.Reader { return strings.NewReader("") }, nil, 0, nil},
		{"small", func() io.Reader { return strings.NewReader(`{"type":"ping"}`) }, nil, 15, nil},
		{"reused buffer", func() io.Reader { return strings.NewReader(`{"type":"ping"}`) }, []byte(strings.Repeat("x", 40))[:0], 15, nil},
		{"exactly limit, one byte at a time", func() io.Reader { return iotest.OneByteReader(strings.NewReader(strings.Repeat("a", limit))) }, nil, limit, nil},
		{"over limit stops at limit+1", func() io.Reader { return strings.NewReader(strings.Repeat("a", 5*limit)) }, nil, limit + 1, nil},
		{"over limit, small reads", func() io.Reader { return iotest.HalfReader(strings.NewReader(strings.Repeat("a", 5*limit))) }, nil, limit + 1, nil},
		{"read error", func() io.Reader { return io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errBoom)) }, nil, 3, errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readFrame(tt.r(), tt.buf, limit)
			want, wantErr := io.ReadAll(io.LimitReader(tt.r(), limit+1))
			if !errors.Is(err, tt.wantErr) || !errors.Is(wantErr, tt.wantErr) {
				t.Fatalf("readFrame error = %v, io.ReadAll error = %v, want %v", err, wantErr, tt.wantErr)
			}
			if len(got) != tt.want || !bytes.Equal(got, want) {
				t.Fatalf("readFrame = %d bytes %.20q, want %d bytes %.20q", len(got), got, tt.want, want)
			}
		})
	}
}
