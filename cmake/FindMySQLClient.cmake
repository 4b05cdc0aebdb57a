# FindMySQLClient: the MySQL client library (libmysqlclient, or MariaDB Connector/C under that name).
# Defines the imported target MySQLClient::MySQLClient. Uses pkg-config (mysqlclient, then libmariadb)
# and falls back to a plain search.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PC_MySQLClient QUIET mysqlclient)
  if(NOT PC_MySQLClient_FOUND)
    pkg_check_modules(PC_MySQLClient QUIET libmariadb)
  endif()
endif()
find_path(MySQLClient_INCLUDE_DIR NAMES mysql.h
  HINTS ${PC_MySQLClient_INCLUDE_DIRS} PATH_SUFFIXES mysql mariadb)
find_library(MySQLClient_LIBRARY NAMES ${PC_MySQLClient_LIBRARIES} mysqlclient mariadb
  HINTS ${PC_MySQLClient_LIBRARY_DIRS})
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MySQLClient REQUIRED_VARS MySQLClient_LIBRARY MySQLClient_INCLUDE_DIR)
if(MySQLClient_FOUND AND NOT TARGET MySQLClient::MySQLClient)
  add_library(MySQLClient::MySQLClient UNKNOWN IMPORTED)
  set_target_properties(MySQLClient::MySQLClient PROPERTIES
    IMPORTED_LOCATION "${MySQLClient_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MySQLClient_INCLUDE_DIR}")
endif()
mark_as_advanced(MySQLClient_INCLUDE_DIR MySQLClient_LIBRARY)
