from lstmgen.cli import main

main()
