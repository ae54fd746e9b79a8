#ifndef RECUR_FUZZ_DRIVER_H
#define RECUR_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer's driver (LLVMFuzzerRunDriver) with `test_one_input` when the executable was
/// linked against libclang_rt.fuzzer_no_main (scripts/fuzz does that); returns -1 when it was
/// not, so that the normal build links and runs without libFuzzer.
int recur_fuzz_run_driver(int *argc, char ***argv, int (*test_one_input)(const uint8_t *data, size_t size));

#endif
