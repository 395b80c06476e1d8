#ifndef SMTPCHECK_CPCAP_SHIM_H
#define SMTPCHECK_CPCAP_SHIM_H
#include <pcap/pcap.h>
#endif
