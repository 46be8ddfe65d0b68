#include "service/cli.h"

int main(int argc, char** argv) { return runnel::RunCli(argc, argv); }
