# Read after corosync's own (automake) Makefile in lib/ and exec/ by run.sh:
#   make -C lib  -f Makefile -f override.mk COROIPC_OBJ=.../coroipcc.o
#   make -C exec -f Makefile -f override.mk COROIPC_OBJ=.../coroipcs.o
# The object corosync would compile from its coroipcc.c / coroipcs.c is libcoroipc
# instead (its static library as one relocatable object, see run.sh); corosync's own
# rules then link it into libcoroipcc.so.4 / libcoroipcs.so.4 (soname, version
# script) and everything that links those. An explicit rule with a recipe beats the
# generic .c.o rule.
coroipcc.o: $(COROIPC_OBJ)
	cp $(COROIPC_OBJ) $@

coroipcs.o: $(COROIPC_OBJ)
	cp $(COROIPC_OBJ) $@
