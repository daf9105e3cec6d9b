#ifndef CSFAST_THREADS_H
#define CSFAST_THREADS_H

/* Number of worker threads the kernels use: CSFAST_NUM_THREADS when set to a
 * positive integer, else the number of online cores. */
int csf_default_threads(void);

#endif
