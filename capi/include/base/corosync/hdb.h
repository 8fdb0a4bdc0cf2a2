/*
 * libcoroipc: the one type of corosync 1.4's hdb.h that coroipcc.h and
 * coroipcs.h use, for programs built without corosync's headers. Inside a
 * corosync tree, corosync's own hdb.h (with its handle database) is used instead;
 * the type is the same.
 */
#ifndef HDB_H_DEFINED
#define HDB_H_DEFINED

#include <stdint.h>

/* A handle: an opaque 64-bit number (for libcoroipc's clients, never 0). */
typedef uint64_t hdb_handle_t;

#endif /* HDB_H_DEFINED */
