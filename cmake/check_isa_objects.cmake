# Fails the build when a per-ISA kernel object defines a weak (COMDAT) symbol outside its own
# gemma_native::ops::cpu::<isa> namespace.  The linker keeps one copy of such a symbol for the
# whole module, possibly the AVX-512 one, and the baseline kernels would then run AVX-512
# instructions on CPUs without them (std::vector<float>'s out-of-line code was one).
#   cmake -DNM=<nm> -DOBJECTS="<a.o;b.o;...>" -P check_isa_objects.cmake
set(bad "")
foreach(obj IN LISTS OBJECTS)
  execute_process(COMMAND "${NM}" -C --defined-only "${obj}" OUTPUT_VARIABLE out
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_isa_objects: ${NM} failed on ${obj}")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  foreach(line IN LISTS lines)
    if(line MATCHES " [WVu] " AND NOT line MATCHES "gemma_native::ops::cpu::(scalar|avx2|avx512|avx512vnni|avx512emu|avx512vnniemu|amx|amxemu|avx512bf16|avx512bf16emu|neon|neondot)::"
       AND NOT line MATCHES "DW\\.ref\\.__gxx_personality_v0")
      string(APPEND bad "\n  ${obj}: ${line}")
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "per-ISA kernel objects define shared weak symbols (use the per-ISA "
                      "helpers of csrc/ops/cpu/simd.h, e.g. Buf, instead of STL templates):${bad}")
endif()
