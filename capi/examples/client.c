/* A coroipcc client of the example services (protocol.h), written against corosync
 * 1.4's coroipcc.h.
 *
 *   client SOCKET_NAME basic     every feature; exit 0 if all behave
 *   client SOCKET_NAME hang      prints "waiting", blocks in a request never answered;
 *                                exit 0 if it ends with CS_ERR_LIBRARY (server killed)
 *   client SOCKET_NAME dispatch  prints "waiting", blocks in coroipcc_dispatch_get;
 *                                exit 0 if it ends with CS_ERR_LIBRARY (server killed)
 *   client SOCKET_NAME sleep     connects, prints "connected", sleeps (to be killed)
 *   client SOCKET_NAME badheader expects responses without a valid header (a Rust
 *                                server's command 4): CS_ERR_MESSAGE_ERROR
 *
 * "basic" runs against the C server (server.c, on libcoroipc's coroipcs) and against
 * a server of the Rust library (tests/support/rust_peer.rs); where the two answer
 * differently (a command the service does not have) both answers are accepted.
 */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <corosync/coroipc_types.h>
#include <corosync/coroipcc.h>
#include "protocol.h"

/* What the client asks for at connect: the largest request and response, and the
 * dispatch ring's capacity. */
#define REQUEST_SIZE 8192
#define RESPONSE_SIZE 8192
#define DISPATCH_SIZE 65536

#define CHECK(cond, ...)                                   \
	do {                                               \
		if (!(cond)) {                             \
			fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);      \
			fprintf(stderr, "\n");             \
			exit(1);                           \
		}                                          \
	} while (0)

static hdb_handle_t connect_to(const char *name, unsigned int service)
{
	hdb_handle_t h = 0;
	cs_error_t err = coroipcc_service_connect(name, service, REQUEST_SIZE, RESPONSE_SIZE,
						  DISPATCH_SIZE, &h);
	CHECK(err == CS_OK, "connect to service %u: %d", service, err);
	return h;
}

/* Sends {header, value} and returns the response's value. */
static cs_error_t call(hdb_handle_t h, int id, uint32_t value, uint32_t *out)
{
	struct req_value req;
	struct res_value res;
	struct iovec iov = { &req, sizeof(req) };
	memset(&req, 0, sizeof(req));
	req.header.size = sizeof(req);
	req.header.id = id;
	req.value = value;
	memset(&res, 0, sizeof(res));
	cs_error_t err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	if (err == CS_OK) {
		CHECK(res.header.size == sizeof(res), "response size %d", res.header.size);
		CHECK(res.header.error == CS_OK, "response error %d", res.header.error);
		*out = res.value;
	}
	return err;
}

static void echo(hdb_handle_t h)
{
	coroipc_request_header_t req;
	memset(&req, 0, sizeof(req));
	req.size = (int)(sizeof(req) + 11);
	req.id = ECHO_ECHO;
	struct iovec iov[3] = { { &req, sizeof(req) }, { "hello", 5 }, { " world", 6 } };
	const size_t res_size = sizeof(coroipc_response_header_t) + 11; /* 24 + 11 */
	char res[64];
	memset(res, 0x5a, sizeof(res));
	CHECK(coroipcc_msg_send_reply_receive(h, iov, 3, res, sizeof(res)) == CS_OK, "echo");
	const coroipc_response_header_t *head = (const void *)res;
	CHECK(head->size == (int)res_size, "echo size %d", head->size);
	CHECK(head->error == CS_OK, "echo error %d", head->error);
	CHECK(memcmp(res + sizeof(*head), "hello world", 11) == 0, "echo payload");
	/* The rest of a buffer larger than the response is zeroed. */
	for (size_t i = res_size; i < sizeof(res); i++)
		CHECK(res[i] == 0, "byte %zu after the response is %d, not 0", i, res[i]);

	/* No copy: the response stays in the library until _put. */
	void *in_buf = NULL;
	CHECK(coroipcc_msg_send_reply_receive_in_buf_get(h, iov, 3, &in_buf) == CS_OK, "in_buf_get");
	CHECK(((uintptr_t)in_buf & 7) == 0, "in_buf is 8-aligned");
	head = in_buf;
	CHECK(head->size == (int)res_size, "in_buf size %d", head->size);
	CHECK(memcmp((char *)in_buf + sizeof(*head), "hello world", 11) == 0, "in_buf payload");
	CHECK(coroipcc_msg_send_reply_receive_in_buf_put(h) == CS_OK, "in_buf_put");

	/* The response written over the request's own buffer. */
	union {
		coroipc_request_header_t req;
		coroipc_response_header_t res;
		char bytes[40];
	} same;
	memset(&same, 0x5a, sizeof(same));
	same.req.size = (int)sizeof(coroipc_request_header_t) + 12; /* 16 + 12 */
	same.req.id = ECHO_ECHO;
	memcpy(same.bytes + sizeof(coroipc_request_header_t), "same buffer", 12);
	struct iovec one = { &same, sizeof(coroipc_request_header_t) + 12 };
	CHECK(coroipcc_msg_send_reply_receive(h, &one, 1, &same, sizeof(same)) == CS_OK, "in place");
	CHECK(same.res.size == (int)sizeof(coroipc_response_header_t) + 12, "in place size %d", same.res.size);
	CHECK(memcmp(same.bytes + sizeof(coroipc_response_header_t), "same buffer", 12) == 0,
	      "in place payload");
	CHECK(same.bytes[36] == 0 && same.bytes[39] == 0, "in place: the rest zeroed");

	/* A response larger than the buffer: corosync's coroipcc copied res_len bytes and
	 * returned CS_OK (the old libcoroipc API said CS_ERR_TOO_BIG); bytes past res_len
	 * are not touched. */
	memset(res, 0x5a, sizeof(res));
	CHECK(coroipcc_msg_send_reply_receive(h, iov, 3, res, 8) == CS_OK, "cut at res_len");
	head = (const void *)res;
	CHECK(head->size == (int)res_size, "the cut copy starts with the header: %d", head->size);
	CHECK(res[8] == 0x5a && res[63] == 0x5a, "nothing written past res_len");

	/* Zero copy as corosync's libraries do it: the request is built in a zcb buffer
	 * (header_size bytes for the library's header, then the payload). */
	void *zcb = NULL;
	CHECK(coroipcc_zcb_alloc(h, &zcb, 11, sizeof(coroipc_request_header_t)) == CS_OK && zcb != NULL,
	      "zcb_alloc");
	CHECK(((uintptr_t)zcb & 7) == 0, "zcb is 8-aligned");
	for (size_t i = 0; i < sizeof(coroipc_request_header_t) + 11; i++)
		CHECK(((const char *)zcb)[i] == 0, "zcb byte %zu zeroed", i);
	coroipc_request_header_t *zreq = zcb;
	zreq->size = (int)(sizeof(*zreq) + 11);
	zreq->id = ECHO_ECHO;
	memcpy((char *)zcb + sizeof(*zreq), "zero copy!!", 11);
	memset(res, 0x5a, sizeof(res));
	CHECK(coroipcc_zcb_msg_send_reply_receive(h, zcb, res, sizeof(res)) == CS_OK, "zcb send");
	head = (const void *)res;
	CHECK(head->size == (int)res_size && head->error == CS_OK, "zcb response size %d", head->size);
	CHECK(memcmp(res + sizeof(*head), "zero copy!!", 11) == 0, "zcb payload");
	/* The buffer can be sent again, then freed. */
	CHECK(coroipcc_zcb_msg_send_reply_receive(h, zcb, res, sizeof(res)) == CS_OK, "zcb resend");
	CHECK(coroipcc_zcb_free(h, zcb) == CS_OK, "zcb_free");
	printf("ok echo\n");
}

static void lies(hdb_handle_t h)
{
	struct req_value req;
	struct res_value res;
	struct iovec iov = { &req, sizeof(req) };
	memset(&req, 0, sizeof(req));
	cs_error_t err;
	/* A size larger than the bytes given: padded with zeros to it (corosync's
	 * libraries send bare headers claiming their whole request structure): the echo
	 * is 12 bytes, cut to res. */
	req.header.size = sizeof(req) + 4;
	req.header.id = ECHO_ECHO;
	req.value = 0x1234;
	memset(&res, 0x5a, sizeof(res));
	err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	CHECK(err == CS_OK && res.header.size == (int)sizeof(res) + 4 && res.header.error == CS_OK &&
	      res.value == 0x1234, "size larger than the message: %d, size %d", err, res.header.size);
	/* ... unless that is above the request_size given at connect. */
	req.header.size = REQUEST_SIZE + 1;
	err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	CHECK(err == CS_ERR_INVALID_PARAM, "size above request_size: %d", err);
	req.header.size = 4;
	err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	CHECK(err == CS_ERR_INVALID_PARAM, "size smaller than the message: %d", err);
	req.header.size = sizeof(req);
	req.header.id = 70000;
	err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	CHECK(err == CS_ERR_INVALID_PARAM, "id out of range: %d", err);
	/* A command the service does not have. coroipcs (the C server) answers it with a
	 * bare header whose error is CS_ERR_INVALID_PARAM, as corosync's did: CS_OK here
	 * and the error in the header. The Rust library's own server says "unknown
	 * command", which coroipcc reports as CS_ERR_INVALID_PARAM. */
	req.header.id = 77;
	memset(&res, 0, sizeof(res));
	err = coroipcc_msg_send_reply_receive(h, &iov, 1, &res, sizeof(res));
	CHECK(err == CS_ERR_INVALID_PARAM ||
	      (err == CS_OK && res.header.size == sizeof(coroipc_response_header_t) &&
	       res.header.error == CS_ERR_INVALID_PARAM),
	      "unknown command: %d, header size %d error %d", err, res.header.size, res.header.error);
	/* Larger than the request_size given at connect. */
	static char big[REQUEST_SIZE + 8];
	coroipc_request_header_t big_head = { sizeof(big), ECHO_ECHO };
	memcpy(big, &big_head, sizeof(big_head));
	struct iovec big_iov = { big, sizeof(big) };
	CHECK(coroipcc_msg_send_reply_receive(h, &big_iov, 1, &res, sizeof(res)) == CS_ERR_INVALID_PARAM,
	      "larger than request_size");
	void *zcb = NULL;
	CHECK(coroipcc_zcb_alloc(h, &zcb, REQUEST_SIZE, sizeof(coroipc_request_header_t)) == CS_ERR_INVALID_PARAM
	      && zcb == NULL, "zcb larger than request_size");
	uint32_t v = 0;
	CHECK(call(h, ECHO_ECHO, 5, &v) == CS_OK && v == 5, "usable after the refusals");
	printf("ok lies\n");
}

/* Dispatch with flow control: the server fills the ring (and the queue behind it) until
 * it is refused; the client sees flow control on, drains every message in order, and
 * sees it off. The fd polls readable while messages wait. */
static void dispatch(hdb_handle_t h)
{
	uint32_t sent = 0, fc = 0;
	int fd = -1;
	CHECK(coroipcc_fd_get(h, &fd) == CS_OK && fd >= 0, "fd_get");
	CHECK(coroipcc_dispatch_flow_control_get(h, &fc) == CS_OK && fc == 0, "flow control off");
	CHECK(call(h, ECHO_DISPATCH, 1000000, &sent) == CS_OK, "dispatch request");
	CHECK(sent > 100 && sent < 1000000, "the server was refused at some point: sent %u", sent);
	CHECK(coroipcc_dispatch_flow_control_get(h, &fc) == CS_OK && fc == 1, "flow control on");
	for (uint32_t i = 0; i < sent; i++) {
		void *buf = (void *)1;
		cs_error_t err = coroipcc_dispatch_get(h, &buf, i % 2 ? 0 : 5000);
		if (err == CS_ERR_TRY_AGAIN) {
			/* Nothing now (queued behind the ring; corosync's "no message"): poll
			 * the fd, then retry. */
			CHECK(buf == NULL, "TRY_AGAIN leaves *buf NULL");
			struct pollfd p = { fd, POLLIN, 0 };
			CHECK(poll(&p, 1, 5000) == 1, "fd readable for message %u", i);
			err = coroipcc_dispatch_get(h, &buf, 5000);
		}
		CHECK(err == CS_OK && buf != NULL, "dispatch_get %u: %d", i, err);
		CHECK(((uintptr_t)buf & 7) == 0, "dispatch message 8-aligned");
		const struct res_value *ev = buf;
		CHECK(ev->header.size == sizeof(*ev) && ev->value == i, "message %u has %u", i, ev->value);
		CHECK(coroipcc_dispatch_put(h) == CS_OK, "put");
	}
	/* None left: corosync's coroipcc says CS_ERR_TRY_AGAIN with *buf NULL (the old
	 * libcoroipc API said CS_OK with NULL). */
	void *none = (void *)1;
	CHECK(coroipcc_dispatch_get(h, &none, 0) == CS_ERR_TRY_AGAIN && none == NULL, "all drained");
	none = (void *)1;
	CHECK(coroipcc_dispatch_get(h, &none, 20) == CS_ERR_TRY_AGAIN && none == NULL, "none within 20 ms");
	/* The server clears the state when it next looks at the ring: give it a moment. */
	for (int tries = 0; tries < 500; tries++) {
		CHECK(coroipcc_dispatch_flow_control_get(h, &fc) == CS_OK, "flow_control_get");
		if (fc == 0)
			break;
		usleep(10000);
	}
	CHECK(fc == 0, "flow control off again");

	printf("ok dispatch\n");
}

/* Answered outside the handler, after the client waited (blocked) for it; a dispatch
 * message sent meanwhile makes the fd readable (a loop polling it is not stranded). */
static void later(hdb_handle_t h)
{
	int fd = -1;
	CHECK(coroipcc_fd_get(h, &fd) == CS_OK, "fd_get");
	for (int round = 0; round < 3; round++) {
		uint32_t v = 0;
		void *buf = (void *)1;
		CHECK(coroipcc_dispatch_get(h, &buf, 0) == CS_ERR_TRY_AGAIN && buf == NULL, "nothing waits");
		CHECK(call(h, ECHO_LATER, 0, &v) == CS_OK && v == 42, "answered outside the handler: %u", v);
		struct pollfd p = { fd, POLLIN, 0 };
		CHECK(poll(&p, 1, 5000) == 1, "fd readable for the message sent during the request");
		CHECK(coroipcc_dispatch_get(h, &buf, 0) == CS_OK && buf != NULL, "the message");
		CHECK(((const struct res_value *)buf)->value == 7, "its value");
		CHECK(coroipcc_dispatch_put(h) == CS_OK, "put");
	}
	printf("ok later\n");
}

static void counter(const char *name)
{
	hdb_handle_t a = connect_to(name, SVC_COUNTER), b = connect_to(name, SVC_COUNTER);
	uint32_t v = 0;
	for (uint32_t i = 1; i <= 3; i++)
		CHECK(call(a, COUNTER_COUNT, 0, &v) == CS_OK && v == i, "a counts %u", v);
	CHECK(call(b, COUNTER_COUNT, 0, &v) == CS_OK && v == 1, "b has its own counter: %u", v);
	/* Refused by admission control: CS_ERR_TRY_AGAIN from either server (coroipcs
	 * answers with a header whose error says so, as corosync's). */
	CHECK(call(a, COUNTER_BUSY, 0, &v) == CS_ERR_TRY_AGAIN, "sending_allowed refuses");
	void *in_buf = NULL;
	struct req_value req;
	memset(&req, 0, sizeof(req));
	req.header.size = sizeof(req);
	req.header.id = COUNTER_BUSY;
	struct iovec iov = { &req, sizeof(req) };
	cs_error_t err = coroipcc_msg_send_reply_receive_in_buf_get(a, &iov, 1, &in_buf);
	/* _in_buf_get hands the refusal over as corosync's did: CS_OK and a header whose
	 * error is CS_ERR_TRY_AGAIN (coroipcs); the Rust server's refusal has no header. */
	CHECK(err == CS_ERR_TRY_AGAIN ||
	      (err == CS_OK && ((const coroipc_response_header_t *)in_buf)->error == CS_ERR_TRY_AGAIN),
	      "in_buf_get refused: %d", err);
	CHECK(coroipcc_msg_send_reply_receive_in_buf_put(a) == CS_OK, "in_buf_put");
	CHECK(call(a, COUNTER_COUNT, 0, &v) == CS_OK && v == 4, "a counts on: %u", v);
	CHECK(coroipcc_service_disconnect(a) == CS_OK && coroipcc_service_disconnect(b) == CS_OK, "disconnect");
	CHECK(call(a, COUNTER_COUNT, 0, &v) == CS_ERR_BAD_HANDLE, "freed handle");
	CHECK(coroipcc_service_disconnect(a) == CS_ERR_BAD_HANDLE, "double disconnect");
	printf("ok counter\n");
}

struct dispatch_arg {
	hdb_handle_t h;
	uint32_t want, got;
};

static void *dispatch_thread(void *p)
{
	struct dispatch_arg *a = p;
	while (a->got < a->want) {
		void *buf = NULL;
		cs_error_t err = coroipcc_dispatch_get(a->h, &buf, -1);
		if (err == CS_ERR_TRY_AGAIN) /* interrupted */
			continue;
		CHECK(err == CS_OK && buf != NULL, "dispatch thread: %d", err);
		const struct res_value *ev = buf;
		CHECK(ev->value == a->got, "dispatch thread: message %u has %u", a->got, ev->value);
		a->got++;
		CHECK(coroipcc_dispatch_put(a->h) == CS_OK, "put");
	}
	return NULL;
}

/* One context, two threads, as in corosync's libraries: one blocks in
 * coroipcc_dispatch_get while the other sends requests. */
static void threads(const char *name)
{
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	struct dispatch_arg a = { h, 50, 0 };
	pthread_t t;
	uint32_t v = 0;
	CHECK(pthread_create(&t, NULL, dispatch_thread, &a) == 0, "thread");
	usleep(20000); /* let it block */
	for (uint32_t i = 0; i < 20; i++)
		CHECK(call(h, ECHO_ECHO, i, &v) == CS_OK && v == i, "request %u while the other thread waits", i);
	CHECK(call(h, ECHO_DISPATCH, 50, &v) == CS_OK && v == 50, "dispatch 50: %u", v);
	CHECK(pthread_join(t, NULL) == 0 && a.got == 50, "the dispatch thread got all");
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	printf("ok threads\n");
}

static int basic(const char *name)
{
	hdb_handle_t none = 0;
	CHECK(coroipcc_service_connect(name, 9, REQUEST_SIZE, RESPONSE_SIZE, DISPATCH_SIZE, &none)
	      == CS_ERR_NOT_EXIST, "no service 9");
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	echo(h);
	lies(h);
	dispatch(h);
	later(h);
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	threads(name);
	counter(name);
	printf("ok all\n");
	return 0;
}

static int blocked(const char *name, int in_dispatch)
{
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	cs_error_t err;
	printf("waiting\n");
	fflush(stdout);
	if (in_dispatch) {
		void *buf = NULL;
		err = coroipcc_dispatch_get(h, &buf, -1);
	} else {
		uint32_t v = 0;
		err = call(h, ECHO_HANG, 0, &v);
	}
	printf("result %d\n", err);
	/* Every later call reports the dead server too, and disconnect still frees. */
	uint32_t v = 0;
	void *buf = (void *)1;
	CHECK(call(h, ECHO_ECHO, 0, &v) == CS_ERR_LIBRARY, "after the server died");
	CHECK(coroipcc_dispatch_get(h, &buf, 0) == CS_ERR_LIBRARY && buf == NULL, "dispatch after it died");
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	return err == CS_ERR_LIBRARY ? 0 : 1;
}

static int bad_header(const char *name)
{
	hdb_handle_t h = connect_to(name, SVC_ECHO);
	coroipc_request_header_t req;
	memset(&req, 0, sizeof(req));
	req.size = sizeof(req);
	req.id = 4;
	struct iovec iov = { &req, sizeof(req) };
	char res[64];
	void *buf = (void *)1;
	CHECK(coroipcc_msg_send_reply_receive(h, &iov, 1, res, sizeof(res)) == CS_ERR_MESSAGE_ERROR, "copy");
	CHECK(coroipcc_msg_send_reply_receive_in_buf_get(h, &iov, 1, &buf) == CS_ERR_MESSAGE_ERROR && buf == NULL,
	      "in_buf_get");
	CHECK(coroipcc_msg_send_reply_receive_in_buf_put(h) == CS_OK, "in_buf_put of nothing");
	void *zcb = NULL;
	CHECK(coroipcc_zcb_alloc(h, &zcb, 0, sizeof(req)) == CS_OK, "zcb_alloc");
	memcpy(zcb, &req, sizeof(req));
	CHECK(coroipcc_zcb_msg_send_reply_receive(h, zcb, res, sizeof(res)) == CS_ERR_MESSAGE_ERROR, "zcb");
	/* Not freed: the disconnect frees it (the leak check would say otherwise). */
	uint32_t v = 0;
	CHECK(call(h, ECHO_ECHO, 7, &v) == CS_OK && v == 7, "usable afterwards");
	CHECK(coroipcc_service_disconnect(h) == CS_OK, "disconnect");
	printf("ok badheader\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s SOCKET_NAME basic|hang|dispatch|sleep|badheader\n", argv[0]);
		return 2;
	}
	const char *name = argv[1], *mode = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "basic") == 0)
		return basic(name);
	if (strcmp(mode, "hang") == 0)
		return blocked(name, 0);
	if (strcmp(mode, "dispatch") == 0)
		return blocked(name, 1);
	if (strcmp(mode, "badheader") == 0)
		return bad_header(name);
	if (strcmp(mode, "sleep") == 0) {
		hdb_handle_t h = connect_to(name, SVC_ECHO);
		(void)h;
		printf("connected\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
