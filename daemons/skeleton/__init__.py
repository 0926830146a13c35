"""The daemon skeletons (Postfix's src/master/*_server.c): single, multi, trigger, dgram."""
