#include "CFuzzDriver.h"

// Weak: resolves to NULL unless libFuzzer is linked in (with -u LLVMFuzzerRunDriver, since a
// weak reference alone does not pull a member out of an archive).
__attribute__((weak)) int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *, size_t));

int recur_fuzz_run_driver(int *argc, char ***argv, int (*test_one_input)(const uint8_t *data, size_t size)) {
    if (!LLVMFuzzerRunDriver) return -1;
    return LLVMFuzzerRunDriver(argc, argv, test_one_input);
}
