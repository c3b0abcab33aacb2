/* Links the library of exit_free_lib.c and exits. */
int exit_free_blocks(void);

int main(void) { return exit_free_blocks() == 7 ? 0 : 1; }
