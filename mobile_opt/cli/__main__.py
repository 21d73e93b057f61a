from mobile_opt.cli import main

main()
