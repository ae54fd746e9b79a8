// OpenBLAS's cblas interface plus its openblas_* extensions (core name, thread count).
#include <cblas.h>
