// The libFuzzer entry point every target in this folder defines. Built two
// ways (CMakeLists.txt): with -fsanitize=fuzzer under clang (RECA_FUZZ=ON),
// and with replay_main.cpp in every native build, where ctest replays the
// committed seed corpus and every input a fuzzing run ever found.
//
// A target must return normally for any input: engine errors (reca::Error)
// are the expected answer to bad bytes; anything else — a crash, a sanitizer
// report, an exception of another type, an input that takes seconds — is a bug.
#pragma once
#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
