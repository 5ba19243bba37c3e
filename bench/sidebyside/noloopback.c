/* LD_PRELOAD shim for Janus: report `lo` as an ordinary interface.
 *
 * Janus gathers its ICE host candidates from getifaddrs() and skips every interface flagged
 * IFF_LOOPBACK, so on its own it never offers 127.0.0.1 and a loopback-only benchmark cannot
 * connect. This wraps getifaddrs(), calls the real one and clears IFF_LOOPBACK on `lo` only;
 * nothing else in the list changes. run.sh builds it into a temp dir:
 *   gcc -shared -fPIC -O2 -o noloopback.so noloopback.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>

int getifaddrs(struct ifaddrs **ifap) {
    static int (*real_getifaddrs)(struct ifaddrs **);
    if (!real_getifaddrs)
        real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    if (!real_getifaddrs)
        return -1;
    int rc = real_getifaddrs(ifap);
    if (rc == 0)
        for (struct ifaddrs *ifa = *ifap; ifa; ifa = ifa->ifa_next)
            if (ifa->ifa_name && strcmp(ifa->ifa_name, "lo") == 0)
                ifa->ifa_flags &= ~(unsigned int)IFF_LOOPBACK;
    return rc;
}
