#include <stdio.h>
#include <corosync/coroipcc.h>
#include <corosync/coroipc_types.h>

int main(int argc, char **argv)
{
	struct { coroipc_request_header_t header; char text[8]; } req;
	struct iovec iov = { &req, sizeof(req) };
	char res[64];
	hdb_handle_t h;
	cs_error_t err = coroipcc_service_connect(argc > 1 ? argv[1] : "my-daemon", 1,
		4096, 4096, 4096, &h);
	if (err != CS_OK) {
		fprintf(stderr, "connect: %d\n", err);
		return 1;
	}
	req.header.size = sizeof(req);
	req.header.id = 0;
	snprintf(req.text, sizeof(req.text), "hi");
	err = coroipcc_msg_send_reply_receive(h, &iov, 1, res, sizeof(res));
	if (err == CS_OK) /* the reply: a coroipc_response_header_t, then the echoed text */
		printf("%s\n", res + sizeof(coroipc_response_header_t));
	coroipcc_service_disconnect(h);
	return err == CS_OK ? 0 : 1;
}
