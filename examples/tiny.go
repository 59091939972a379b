package examples

// TinyWasm is the smallest useful WASI command: it writes "tiny job ok\n"
// to stdout and returns. It is written out by hand (a .wat source is in the
// comment below) so that the bench measures the mesh, not a language
// runtime's start-up: a Go wasip1 module spends ~20 ms initialising.
//
//	(module
//	  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "\10\00\00\00\0c\00\00\00")  ;; iovec {ptr 16, len 12}
//	  (data (i32.const 16) "tiny job ok\n")
//	  (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
var TinyWasm = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	// type section: (i32 i32 i32 i32) -> i32, () -> ()
	0x01, 0x0c, 0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00,
	// import section: wasi_snapshot_preview1.fd_write, type 0
	0x02, 0x23, 0x01, 0x16,
	'w', 'a', 's', 'i', '_', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', '_', 'p', 'r', 'e', 'v', 'i', 'e', 'w', '1',
	0x08, 'f', 'd', '_', 'w', 'r', 'i', 't', 'e', 0x00, 0x00,
	// function section: one function of type 1
	0x03, 0x02, 0x01, 0x01,
	// memory section: one memory, 1 page
	0x05, 0x03, 0x01, 0x00, 0x01,
	// export section: "memory" (memory 0), "_start" (function 1)
	0x07, 0x13, 0x02,
	0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01,
	// code section: fd_write(1, 0, 1, 8); drop
	0x0a, 0x0f, 0x01, 0x0d, 0x00,
	0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x1a, 0x0b,
	// data section: the iovec at 0, the text at 16
	0x0b, 0x1f, 0x02,
	0x00, 0x41, 0x00, 0x0b, 0x08, 0x10, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00,
	0x00, 0x41, 0x10, 0x0b, 0x0c, 't', 'i', 'n', 'y', ' ', 'j', 'o', 'b', ' ', 'o', 'k', '\n',
}
