#include "otarig/harness/cli.hpp"

int main(int argc, char** argv) { return otarig::harness::cli_main(argc, argv); }
