/* empty.c - the start-up floor for tests/bench/run.sh: a dynamically linked C program doing nothing. */
int main(void) { return 0; }
