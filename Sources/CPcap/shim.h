#ifndef SMTPCHECK_CPCAP_SHIM_H
#define SMTPCHECK_CPCAP_SHIM_H
#include <pcap/pcap.h>

/* Asks for the cache line at `address` ahead of its use, where the hardware
   cannot guess it: the next record header of a mapped capture, which lies
   past a payload the reading thread never touches. A hint only: it never
   faults, and does nothing where the compiler has no such instruction. */
static inline void smtpcheck_prefetch(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 3);
#else
    (void)address;
#endif
}
#endif
