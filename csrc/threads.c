#include "threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

int csf_default_threads(void)
{
    const char *env = getenv("CSFAST_NUM_THREADS");
    if (env != NULL && *env != '\0') {
        char *end = NULL;
        long n = strtol(env, &end, 10);
        if (end != env && *end == '\0' && n > 0 && n <= CSF_MAX_THREADS) {
            return (int)n;
        }
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}

int csf_threads_for(int nthreads, long long work, long long grain)
{
    if (nthreads < 1) {
        nthreads = 1;
    }
    long long useful = grain > 0 ? work / grain : work;
    if (useful < 1) {
        useful = 1;
    }
    return useful < nthreads ? (int)useful : nthreads;
}

typedef struct {
    csf_task task;
    void *ctx;
    int tid;
    int nthreads;
} csf_job;

static void *csf_run(void *arg)
{
    csf_job *job = arg;
    job->task(job->ctx, job->tid, job->nthreads);
    return NULL;
}

void csf_parallel(int nthreads, csf_task task, void *ctx)
{
    if (nthreads <= 1) {
        task(ctx, 0, 1);
        return;
    }
    if (nthreads > CSF_MAX_THREADS) {
        nthreads = CSF_MAX_THREADS;
    }
    csf_job jobs[CSF_MAX_THREADS];
    pthread_t ids[CSF_MAX_THREADS];
    unsigned char started[CSF_MAX_THREADS];
    for (int t = 1; t < nthreads; t++) {
        jobs[t] = (csf_job){task, ctx, t, nthreads};
        started[t] = pthread_create(&ids[t], NULL, csf_run, &jobs[t]) == 0;
    }
    task(ctx, 0, nthreads);
    for (int t = 1; t < nthreads; t++) {
        if (started[t]) {
            pthread_join(ids[t], NULL);
        } else {
            task(ctx, t, nthreads);
        }
    }
}
