from reverb.cli import main

raise SystemExit(main())
