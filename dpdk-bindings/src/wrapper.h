/* The DPDK headers ctfwd binds. bindgen reads this file; the generated
 * static-inline wrappers (and shim.c) include it too. */
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_ethdev.h>
#include <rte_thash.h>
#include <rte_version.h>
#include <rte_telemetry.h>
#include <rte_pdump.h>

/* Things bindgen cannot reach: thread-local variables behind macros. */
int ctfwd_rte_errno(void);
