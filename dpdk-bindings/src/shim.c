/* Hand-written shim for what bindgen's static-inline wrappers cannot cover:
 * rte_errno is a macro over a per-lcore (thread-local) variable. */
#include "wrapper.h"

int ctfwd_rte_errno(void)
{
	return rte_errno;
}
