// CPU feature detection of our own: CPUID + XGETBV on x86-64, the kernel's hwcaps on aarch64.
//
// Why not __builtin_cpu_supports: it relies on the compiler runtime's __cpu_indicator_init,
// which some toolchains used for portable wheels (zig's compiler-rt) implement as a stub that
// reports nothing, so such a build silently ran the scalar kernels only; and GCC 12 has no names
// for AMX.  Reading the registers ourselves gives the same answer under every compiler.
//
// A feature counts only when the CPU has it *and* the OS saves its register state: AVX needs
// XCR0 bits 1-2 (XMM, YMM), AVX-512 bits 5-7 (opmask, upper ZMM halves, ZMM16-31), AMX bits
// 17-18 (tile config, tile data; Linux additionally hands the tile data out per process, see
// dispatch.cc).  The decoding is a pure function of the register values so tests can feed it
// made-up CPUs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gemma_native::ops::cpu {

// The CPUID / XGETBV words the decoding reads (zero where a leaf does not exist).
struct X86Cpuid {
  uint32_t leaf1_ecx = 0;    // CPUID.1:ECX   (FMA 12, OSXSAVE 27, AVX 28, F16C 29)
  uint32_t leaf7_ebx = 0;    // CPUID.7.0:EBX (AVX2 5, AVX512F 16, DQ 17, BW 30, VL 31)
  uint32_t leaf7_ecx = 0;    // CPUID.7.0:ECX (AVX512_VNNI 11)
  uint32_t leaf7_edx = 0;    // CPUID.7.0:EDX (AMX_BF16 22, AMX_TILE 24, AMX_INT8 25)
  uint32_t leaf7_1_eax = 0;  // CPUID.7.1:EAX (AVX512_BF16 5)
  uint64_t xcr0 = 0;         // XGETBV(0), read only when OSXSAVE is set
};

// Feature name -> usable, in a fixed order: avx2, fma, f16c, avx512f, avx512bw, avx512vl,
// avx512dq, avx512bf16, avx512vnni, amx_tile, amx_bf16, amx_int8.
std::vector<std::pair<std::string, bool>> decode_x86(const X86Cpuid& r);

// The x86 processor's identity, for the few kernel settings that depend on the
// microarchitecture rather than on the instruction set (dispatch.h): the CPUID leaf 0 vendor
// string and leaf 1 EAX's family and model as the vendors define their display values (the
// extended family added where the base family is 15; the extended model prepended where the
// base family is 6 or 15).  Empty vendor and zeros off x86.
struct X86Model {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD", ...
  int family = 0;
  int model = 0;
};
// leaf0_ebx/edx/ecx: the vendor string's three words in that order (CPUID.0).
X86Model decode_x86_model(uint32_t leaf0_ebx, uint32_t leaf0_edx, uint32_t leaf0_ecx,
                          uint32_t leaf1_eax);
const X86Model& detected_x86_model();  // this machine's, read once

// The aarch64 hwcap words (getauxval(AT_HWCAP), getauxval(AT_HWCAP2)) -> neon (ASIMD, bit 1),
// dotprod (ASIMDDP, bit 20), i8mm (HWCAP2 bit 13), bf16 (HWCAP2 bit 14), in that order.
std::vector<std::pair<std::string, bool>> decode_arm(uint64_t hwcap, uint64_t hwcap2);

// This machine's features (decode_x86 or decode_arm of the running CPU; empty elsewhere),
// read once.
const std::vector<std::pair<std::string, bool>>& detected_features();
bool has_feature(const std::string& name);

}  // namespace gemma_native::ops::cpu
