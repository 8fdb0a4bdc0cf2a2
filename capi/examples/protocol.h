/* The example services' messages, shared by server.c, client.c and the tests. */
#ifndef COROIPC_EXAMPLE_PROTOCOL_H
#define COROIPC_EXAMPLE_PROTOCOL_H

#include <stdint.h>
#include <corosync/coroipc_types.h>

/* Service 1, "echo". */
#define SVC_ECHO 1
#define ECHO_ECHO 0     /* answers the payload after the header */
#define ECHO_DISPATCH 1 /* value = count: sends that many dispatch messages (value = seq),
                           stops at the first refusal, answers how many were sent */
#define ECHO_LATER 2    /* sends one dispatch message (value 7), answers 42 after the
                           next poll of the loop, outside the handler */
#define ECHO_HANG 3     /* never answered */

/* Service 2, "counter": a counter in the connection's private data. */
#define SVC_COUNTER 2
#define COUNTER_COUNT 0 /* increments the counter, answers it */
#define COUNTER_BUSY 1  /* refused by sending_allowed: CS_ERR_TRY_AGAIN */

/* Service 9 does not exist. */

struct req_value {
	coroipc_request_header_t header;
	uint32_t value;
};

struct res_value {
	coroipc_response_header_t header;
	uint32_t value;
};

#endif
