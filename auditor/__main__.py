from auditor.cli import main
from auditor.process_exit import exit_process

exit_process(main())
