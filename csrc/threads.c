#include "threads.h"

#include <stdlib.h>
#include <unistd.h>

int csf_default_threads(void)
{
    const char *env = getenv("CSFAST_NUM_THREADS");
    if (env != NULL && *env != '\0') {
        char *end = NULL;
        long n = strtol(env, &end, 10);
        if (end != env && *end == '\0' && n > 0 && n <= 1024) {
            return (int)n;
        }
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}
