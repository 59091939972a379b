package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrFrameTooLarge is returned when a frame exceeds its size limit. Readers
// return it after reading only the length prefix, before allocating.
var ErrFrameTooLarge = errors.New("p2p: frame too large")

// A frame is a uvarint length prefix followed by that many bytes.

// WriteFrame writes data as one frame, refusing data longer than max. Prefix
// and payload go out in one Write, so a stream multiplexer sends them in one
// piece.
func WriteFrame(w io.Writer, data []byte, max int) error {
	if len(data) > max {
		return fmt.Errorf("write frame: %d bytes, limit %d: %w", len(data), max, ErrFrameTooLarge)
	}
	buf := make([]byte, 0, binary.MaxVarintLen64+len(data))
	buf = binary.AppendUvarint(buf, uint64(len(data)))
	buf = append(buf, data...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame of at most max bytes. It returns io.EOF,
// unwrapped, when r ends cleanly before a frame starts, and an error
// wrapping ErrFrameTooLarge, without reading or allocating the payload, when
// the prefix announces more than max.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	return readFrame(r, max, nil)
}

// readFrame is ReadFrame with a hook that may refuse (or account for) the
// allocation once the size is known, e.g. a stream scope's ReserveMemory.
func readFrame(r io.Reader, max int, reserve func(n int) error) ([]byte, error) {
	n, err := readUvarint(r)
	if err != nil {
		return nil, err
	}
	if max < 0 || n > uint64(max) {
		return nil, fmt.Errorf("read frame: %d bytes, limit %d: %w", n, max, ErrFrameTooLarge)
	}
	if reserve != nil {
		if err := reserve(int(n)); err != nil {
			return nil, fmt.Errorf("read frame of %d bytes: %w", n, err)
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read frame of %d bytes: %w", n, err)
	}
	return buf, nil
}

// readUvarint reads the length prefix one byte at a time, so it never
// consumes payload bytes from r and needs no buffering.
func readUvarint(r io.Reader) (uint64, error) {
	var (
		x uint64
		b [1]byte
	)
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("read frame length: %w", err)
		}
		if i == binary.MaxVarintLen64-1 && b[0] > 1 {
			break // would overflow 64 bits
		}
		x |= uint64(b[0]&0x7f) << (7 * i)
		if b[0] < 0x80 {
			return x, nil
		}
	}
	return 0, fmt.Errorf("read frame length: prefix overflows 64 bits: %w", ErrFrameTooLarge)
}
