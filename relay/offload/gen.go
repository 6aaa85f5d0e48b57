package offload

// The committed channeldata_bpf{el,eb}.{go,o} come from this line (TestObjectsCurrent
// checks they are current), so building never needs clang. Regenerating needs clang,
// llvm-strip (package llvm) and the libbpf headers (libbpf-dev); the include path is
// Debian's for amd64, where asm/types.h lives. -mcpu=v3: 32-bit jumps and ALU, in every
// kernel with TCX (6.6+).

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -no-strip -target bpfel,bpfeb -tags linux channelData bpf/channeldata.c -- -O2 -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu
